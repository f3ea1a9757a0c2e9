"""`nas predict EXPORT_DIR IMAGE...`: the top classes of image files, by an exported network and its config.json."""

from __future__ import annotations

import argparse

from nas.deploy.predict import FORMS, predict


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="classify image files with an exported folder")
    parser.add_argument("export_dir", help="a folder `nas export` wrote")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--form", choices=list(FORMS),
                        help="which file runs: onnx (default when present), onnx-int8, pt2 or eager")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    form, predictions = predict(args.export_dir, args.images, form=args.form, top=args.top, threads=args.threads)
    for prediction in predictions:
        ranked = ", ".join(f"{name} {100 * probability:.1f}%" for _, name, probability in prediction.top)
        print(f"{prediction.image}: {ranked}")
    print(f"({form}, {len(predictions)} image(s))")
    return 0
