// A producer written in JavaScript: serves `work(context) -> context`.
//
// Built by lp-host with componentize-js for the world
// lp:consumer-producers/blocking-producer-node (synchronous: componentize-js
// 0.23 has no component-model async), served to the Rust consumer:
//
//   lp-host run examples/consumer_producers/program.toml \
//       --set 'producer.component="producer_js/app.js"' \
//       --set 'producer.world="lp:consumer-producers/blocking-producer-node"'
//
// A u64 is a BigInt in JavaScript.

export const producer = {
  work(context) {
    return context;
  },
};
