"""``esarm push``: upload a saved model or processor folder to the Hub with its model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from esarm.commands import CommandError, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push", help="upload a model or processor folder to the Hub with a model card",
        description="Render the model card from model_cards/ (metrics from --report) and upload the folder.",
    )  # fmt: skip
    p.add_argument("folder", help="save_pretrained folder (STA, RL policy, motion prior, reward model or processor)")
    p.add_argument("--repo-id", required=True, help="user/name on the Hub")
    p.add_argument("--report", help="evaluation report JSON for the card's metrics table")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--commit-message", default="Upload with esarm")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be uploaded to DIR; upload nothing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from esarm.hub import prepare_upload_folder, push_to_hub

    if not Path(args.folder).is_dir():
        raise CommandError(f"model folder not found: {args.folder}")
    if args.dry_run:
        folder = prepare_upload_folder(args.folder, args.dry_run, repo_id=args.repo_id, report=args.report)
        say(f"would upload to {args.repo_id}:")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            say(f"  {path.relative_to(folder)}  ({path.stat().st_size} bytes)")
        return 0
    url = push_to_hub(
        args.folder, args.repo_id, report=args.report, private=args.private, token=args.token,
        commit_message=args.commit_message,
    )  # fmt: skip
    say(f"pushed {args.folder} to {url}")
    return 0
