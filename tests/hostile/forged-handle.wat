;; Calls a snapshot method on the handle it has already dropped: the host
;; call fails, and the reason must say why on one line, without a backtrace.
(import "tollgate:plugin/snapshot@WIT_VERSION" "[method]snapshot.service" (func $service (param i32 i32)))
;;BODY
(call $service (local.get $snapshot) (i32.const 2048))
(i32.const 1024)
