"""README "Output streams": every method of the table, on execute() and on shell.run().

Both return a RunResult whose stdout is the merged stdout+stderr stream. 0.7.2 quirks kept:
shell.run output has no final newline (it is cleaned terminal text), execute's is the raw log.

Official releases from 0.7.6 run the shell over `/exec`: shell.run's stdout is the raw stdout
(final newline included) and its stderr comes apart in `RunResult.stderr`; execute() still
returns the merged log as stdout, with an empty stderr. The 0.7.7 README (NEW_README) says
so: "RunResult.stdout and RunResult.stderr are OutputStream instances".
"""

from _common import REPO, check_client, done, official_since

import tilde

check_client()
repo = tilde.repository(REPO)

CMD = "printf 'alpha\\nbeta\\n'; printf 'gamma\\n' >&2; printf 'd\\303\\251lta\\n'"
EXPECTED_LINES = ["alpha", "beta", "gamma", "délta"]
RAW = official_since("0.7.6")


def check(stream, lines: list[str] = EXPECTED_LINES, *, final_newline: bool) -> None:
    data = stream.read()
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    assert isinstance(data, bytes) and data == text.encode(), data
    assert stream.text(encoding="utf-8") == text and stream.text() == text
    assert b"".join(stream.iter_bytes(4)) == data
    assert all(isinstance(c, bytes) and 0 < len(c) <= 4 for c in stream.iter_bytes(4))
    assert "".join(stream.iter_text(3)) == text
    assert list(stream.iter_lines()) == lines
    assert str(stream) == text


result = repo.execute(CMD)
assert result.exit_code == 0
# The merged log's order of stdout and stderr lines is the order they were written.
check(result.stdout, final_newline=True)
if RAW:
    check(result.stderr, [], final_newline=False)

with repo.shell() as sh:
    run = sh.run(CMD)
    assert run.exit_code == 0
    if RAW:
        check(run.stdout, ["alpha", "beta", "délta"], final_newline=True)
        check(run.stderr, ["gamma"], final_newline=True)
    else:
        check(run.stdout, final_newline=False)

done("output_streams")
