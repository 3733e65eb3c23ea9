;; A whole component (not a fragment): asks for the host's filesystem.
(component
  (import "wasi:filesystem/types@0.2.0" (instance)))
