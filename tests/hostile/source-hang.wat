;; A source whose one request (`/hang`) the test server never answers: the
;; operator's timeout ends it, and the query fails, naming it.
;;START
(i32.const 1024)
;;NEXT
unreachable
;;EXTRA
(data (i32.const 1024) "\00\00\00\00" "\00\08\00\00" "\01\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 2048) "\00\00\00\00" "\00\0c\00\00" "\05\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00" "\00\00\00\00")
(data (i32.const 3072) "/hang")
