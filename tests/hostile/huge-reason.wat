;; Returns a 100 MB reason (memory permitting): verdict fail, reason at 64 KiB.
(drop (memory.grow (i32.const 1600)))
(i32.store8 (i32.const 1024) (i32.const 2))
(i32.store (i32.const 1028) (i32.const 65536))
(i32.store (i32.const 1032) (i32.const 100000000))
(i32.const 1024)
