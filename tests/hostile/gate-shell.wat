;; The canonical-ABI shell every hostile gate shares: a gate-world core module
;; whose `evaluate` body comes from a fragment file. The test harness replaces
;; IMPORTS, BODY and EXTRA markers below, embeds the `gate` world's metadata and encodes
;; the result as a component, as wit-bindgen output would be.
;;
;; A finding is returned through memory at 1024 (canonical ABI layout):
;;   +0 verdict u8 (0 pass, 1 warn, 2 fail, 3 inconclusive)
;;   +4 reason ptr, +8 reason len
;;   +16 observed option tag, +24 f64; +32 threshold option tag, +40 f64
;;   +48 details ptr, +52 details len
(module
  ;; A borrowed snapshot handle must be released before the call returns.
  (import "tollgate:plugin/snapshot@WIT_VERSION" "[resource-drop]snapshot" (func $drop_snapshot (param i32)))
  (;IMPORTS;)
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
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
  (func (export "tollgate:plugin/gate-api@WIT_VERSION#validate-config") (param i32 i32) (result i32)
    (i32.const 0))
  (func (export "tollgate:plugin/gate-api@WIT_VERSION#evaluate") (param $config i32) (param $len i32) (param $snapshot i32) (result i32)
    (call $drop_snapshot (local.get $snapshot))
    (;BODY;))
  (;EXTRA;))
