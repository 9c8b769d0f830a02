"""hello_world in Python: a node whose `run` prints a greeting and returns;
the program ends when every node with a `run` has finished.

Built by lp-host with componentize-py for lp:node's own world
lp:node/blocking-node-with-run (a synchronous `run`, no WIT of its own):

    lp-host run examples/hello_world/program.toml \
        --set 'hello.component="hello_py/app.py"' \
        --set 'hello.world="lp:node/blocking-node-with-run"'
"""

from wit_world import exports


class BlockingLifecycle(exports.BlockingLifecycle):
    def run(self) -> None:
        print("Hello World!!!")
