;; Counts its calls in a global: `observed` is the number of this call on its
;; instance, so a test can see which calls shared an instance.
;;BODY
(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
(i32.store8 (i32.const 1040) (i32.const 1))
(f64.store (i32.const 1048) (f64.convert_i32_u (global.get $calls)))
(i32.const 1024)
;;EXTRA
(global $calls (mut i32) (i32.const 0))
