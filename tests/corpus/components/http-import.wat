;; A component importing an interface lp-host does not provide.
(component
  (import "wasi:http/outgoing-handler@0.2.0" (instance $http
    (export "handle" (func))
  ))
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func $run (canon lift (core func $i "run")))
  (instance $lifecycle (export "run" (func $run)))
  (export "lp:node/blocking-lifecycle@0.1.0" (instance $lifecycle))
)
