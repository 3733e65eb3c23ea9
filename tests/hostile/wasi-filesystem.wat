;; A whole component (not a fragment): asks for a WASI version the host
;; does not link (WASI 0.2 is linked and inert; 0.3 is not).
(component
  (import "wasi:filesystem/types@0.3.0" (instance)))
