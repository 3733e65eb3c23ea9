;; A source that sets `Authorization` itself, to replace or learn the
;; operator's credential: refused, nothing sent.
;;START
(i32.const 1024)
;;NEXT
unreachable
;;EXTRA
(data (i32.const 1024) "\00\00\00\00" "\00\08\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 2048) "\00\00\00\00" "\00\0d\00\00" "\04\00\00\00" "\00\0a\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 2560) "\00\0c\00\00" "\0d\00\00\00" "\80\0c\00\00" "\08\00\00\00")
(data (i32.const 3072) "Authorization")
(data (i32.const 3200) "Bearer x")
(data (i32.const 3328) "/api")
