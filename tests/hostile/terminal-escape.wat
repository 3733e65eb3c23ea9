;; Fails with a reason that tries to clear the screen and print a green
;; PROMOTE: ESC [2J ESC [H ESC [32m PROMOTE BEL CR.
(i32.store8 (i32.const 1024) (i32.const 2))
(i32.store (i32.const 1028) (i32.const 3072))
(i32.store (i32.const 1032) (i32.const 21))
(i32.const 1024)
;;EXTRA
(data (i32.const 3072) "\1b[2J\1b[H\1b[32mPROMOTE\07\0d")
