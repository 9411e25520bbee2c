"""The client half of scripts/demo.sh: the bundled `tilde` client against a local server.

TILDE_API_KEY and TILDE_ENDPOINT_URL come from the environment, as for any user script.
"""

import tilde


def main() -> None:
    org = tilde.organizations.create("demo", "Demo organization")
    print(f"created organization {org.name!r}")
    repo = org.repositories.create("hello", description="made by scripts/demo.sh")
    print(f"created repository {repo.org}/{repo.name} ({repo.visibility})")

    with repo.session() as session:
        session.objects.put("README.txt", b"Hello from tilde!\n")
        session.objects.put("data/numbers.csv", b"n,square\n1,1\n2,4\n3,9\n")
        first = session.commit("Add a greeting and some numbers")
    print(f"committed {first}")

    with repo.session() as session:
        session.objects.put("data/numbers.csv", b"n,square\n1,1\n2,4\n3,9\n4,16\n")
        session.objects.delete("README.txt")
        second = session.commit("One more number; drop the greeting")
    print(f"committed {second}")

    with repo.session() as session:
        with session.objects.get("data/numbers.csv") as f:
            print("data/numbers.csv now reads:")
            print("    " + f.read().decode().rstrip("\n").replace("\n", "\n    "))
        paths = [entry.path for entry in session.objects.list()]
    print(f"objects at the head: {paths}")

    print("log, newest first:")
    for commit in repo.timeline():
        print(f"  {commit.id[:12]}  {commit.message}")
        for change in commit.diff():
            print(f"      {change.status:8} {change.path}")


if __name__ == "__main__":
    main()
