"""The console scripts' entry (`mooncake.cli.run` -> `mooncake_cli_main` of the library): a tool
names itself by argv[0], returns its exit status, and an unknown tool is refused with 2."""
import subprocess

from store_support import python_or_skip

RUN = "import sys; from mooncake import cli; sys.exit(cli.run(sys.argv[1], sys.argv[2:]))"


def run(tool, *argv):
    python = python_or_skip("ours")
    p = subprocess.run([python, "-c", RUN, tool, *argv], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_a_tool_names_itself_by_argv0():
    rc, out, _ = run("mooncake-bench", "/somewhere/transfer_engine_bench", "--help")
    assert rc == 0 and "Usage: transfer_engine_bench " in out, out
    rc, out, _ = run("mooncake_master", "my_master", "--version")
    assert rc == 0 and out.startswith("my_master version "), out


def test_exit_status_and_unknown_tools():
    rc, _, err = run("mooncake-bench", "mooncake-bench", "--no_such_flag")
    assert rc == 2, err
    rc, _, err = run("no_such_tool", "x")
    assert rc == 2 and "unknown tool" in err, err
