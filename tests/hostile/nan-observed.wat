;; Claims verdict pass with an observed value of NaN.
(i32.store8 (i32.const 1040) (i32.const 1))
(f64.store (i32.const 1048) (f64.const nan))
(i32.const 1024)
