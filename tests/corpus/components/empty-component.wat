;; A valid component that does nothing an lp node does.
(component)
