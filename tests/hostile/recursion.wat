;; Recurses without end; the wasm stack cap stops it.
(call $deeper (i32.const 0))
;;EXTRA
(func $deeper (param i32) (result i32)
  (call $deeper (i32.add (local.get 0) (i32.const 1))))
