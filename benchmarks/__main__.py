"""``python -m benchmarks TASK --root DATA [--model NAME_OR_PATH ...] [--baselines sift,rootsift]
--json OUT.json [--markdown OUT.md] [--plot OUT.png]``

Tasks: hpatches-patches, sequences, pose, sfm, speed; and make-hpatches-patches, which writes an
HPatches-style patch set from homography sequences. The protocol and the markdown tables are also
printed.
"""

import argparse
import sys

import torch

from . import hpatches_patches, methods, pose, report, sequences, sfm, speed

TASKS = {
    "hpatches-patches": hpatches_patches,
    "sequences": sequences,
    "pose": pose,
    "sfm": sfm,
    "speed": speed,
}


def common_arguments(parser, baselines="sift,rootsift"):
    parser.add_argument("--model", action="append", default=None, metavar="NAME_OR_PATH",
                        help="a shipped model name or a checkpoint path (repeatable; default: every "
                             "shipped model in weights/; --model '' for none)")
    parser.add_argument("--baselines", default=baselines,
                        help=f"comma-separated baselines and/or checkpoint paths described before the "
                             f"models (default: {baselines}; '' for none)")
    parser.add_argument("--device", default="auto", help="torch device of the models (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="write the results document here")
    parser.add_argument("--markdown", help="write the markdown tables here")
    parser.add_argument("--plot", help="write a plot here (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True)
    for name, module in TASKS.items():
        sub = tasks.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        common_arguments(sub, getattr(module, "DEFAULT_BASELINES", "sift,rootsift"))
    make = tasks.add_parser("make-hpatches-patches", help=hpatches_patches.make_patches.__doc__.splitlines()[0])
    hpatches_patches.add_make_arguments(make)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.task == "make-hpatches-patches":
            hpatches_patches.make(args)
            return 0
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        if args.plot:
            report.pyplot()  # fail before the run, not after it
        module = TASKS[args.task]
        models = methods.shipped_names() if args.model is None else args.model
        specs = methods.method_specs(args.baselines, models)
        doc, sections = module.run(args, specs)
    except (ValueError, ImportError) as error:  # bad data, options or a missing optional dependency
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        report.write_json(doc, args.json)
    if args.markdown:
        report.write_markdown(doc, sections, args.markdown)
    if args.plot:
        module.plot(doc["results"], args.plot)
    print(doc["protocol"])
    for title, body in sections:
        print(f"\n{title}\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
