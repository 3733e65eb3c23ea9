;; Grows memory 1 MiB at a time until something stops it.
(loop $grow
  (drop (memory.grow (i32.const 16)))
  (br $grow))
(i32.const 1024)
