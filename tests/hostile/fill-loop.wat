;; Grows memory to 256 MiB, then fills all of it, again and again: each
;; `memory.fill` is one instruction the deadline cannot interrupt.
(drop (memory.grow (i32.sub (i32.const 4096) (memory.size))))
(loop $fill
  (memory.fill (i32.const 0) (i32.const 7) (i32.mul (memory.size) (i32.const 65536)))
  (br $fill))
(i32.const 1024)
