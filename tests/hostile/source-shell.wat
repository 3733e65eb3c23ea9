;; The canonical-ABI shell every hostile source shares: a source-world core
;; module whose `start` and `next` bodies come from a fragment file (markers
;; START, NEXT and EXTRA, where EXTRA holds the data segments the answers
;; point at). Each body returns a pointer to its answer in memory:
;;   start: +0 result tag (0 ok), +4 round: requests ptr, len, state ptr, len
;;   next:  +0 result tag, +4 step tag (0 fetch, 1 done), +8 round or series list
;; A request (28 bytes): +0 method u8 (0 get, 1 post), +4 path ptr, +8 len,
;; +12 headers ptr, +16 len (each header: name ptr, len, value ptr, len),
;; +20 body ptr, +24 len.
(module
  (;IMPORTS;)
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 16384))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $new i32) (result i32)
    (local $p i32)
    (local $end i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $new)))
    (block $done
      (loop $grow
        (br_if $done (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (global.set $heap (local.get $end))
    (local.get $p))
  ;; Memory at 0 is zero: `ok` for result<_, string>.
  (func (export "tollgate:plugin/source-api@WIT_VERSION#validate-config") (param i32 i32) (result i32)
    (i32.const 0))
  ;; config (ptr, len), query (metric, text, start, end, step, variables)
  (func (export "tollgate:plugin/source-api@WIT_VERSION#start")
    (param i32 i32 i32 i32 i32 i32 i64 i64 i64 i32 i32) (result i32)
    (;START;))
  ;; config, query, state (ptr, len), responses (ptr, len)
  (func (export "tollgate:plugin/source-api@WIT_VERSION#next")
    (param i32 i32 i32 i32 i32 i32 i64 i64 i64 i32 i32 i32 i32 i32 i32) (result i32)
    (;NEXT;))
  (;EXTRA;))
