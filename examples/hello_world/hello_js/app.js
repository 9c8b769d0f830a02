// hello_world in JavaScript: a node whose synchronous `run` prints a
// greeting and returns. Built by lp-host with componentize-js for lp:node's
// own world lp:node/blocking-node-with-run:
//
//   lp-host run examples/hello_world/program.toml \
//       --set 'hello.component="hello_js/app.js"' \
//       --set 'hello.world="lp:node/blocking-node-with-run"'

export const blockingLifecycle = {
  run() {
    console.log("Hello World!!!");
  },
};
