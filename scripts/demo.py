"""The client half of scripts/demo.sh: the bundled `tilde` client against the demo's server.

    demo.py show ORG/REPO COMMIT_ID...       the log with each commit's changes, the files
                                             at the head; fails unless every COMMIT_ID is
                                             in the log

TILDE_API_KEY and TILDE_ENDPOINT_URL come from the environment, as for any user script.
"""

import sys

import tilde


def show(repo_path: str, expected: list[str]) -> None:
    repo = tilde.repository(repo_path)
    print(f"log of {repo_path}, newest first:")
    seen = []
    for commit in repo.timeline():
        seen.append(commit.id)
        print(f"  {commit.id}  {commit.message}")
        for change in commit.diff():
            print(f"      {change.status:8} {change.path}")
    missing = [c for c in expected if c not in seen]
    if missing:
        sys.exit(f"demo: commit(s) {', '.join(missing)} not in the log of {repo_path}")

    print(f"files at the head of {repo_path}:")
    with repo.session() as session:
        for entry in session.objects.list():
            print(f"  {entry.path}")
        with session.objects.get("data/numbers.csv") as f:
            print("data/numbers.csv reads:")
            print("    " + f.read().decode().rstrip("\n").replace("\n", "\n    "))


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "show":
        show(argv[1], argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
