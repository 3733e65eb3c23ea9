;; Logs 32 lines of 15 MiB each (zero bytes are valid UTF-8), then passes.
;; The host must keep only each line's prefix, not 32 × 15 MiB.
(import "tollgate:plugin/host@WIT_VERSION" "log" (func $log (param i32 i32 i32)))
;;BODY
(drop (memory.grow (i32.const 241)))
(block $done
  (loop $again
    (br_if $done (i32.ge_u (i32.load (i32.const 2000)) (i32.const 32)))
    (i32.store (i32.const 2000) (i32.add (i32.load (i32.const 2000)) (i32.const 1)))
    (call $log (i32.const 1) (i32.const 65536) (i32.const 15728640))
    (br $again)))
(i32.const 1024)
