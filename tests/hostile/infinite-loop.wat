;; Spins forever; only the epoch deadline stops it.
(loop $spin (br $spin))
(i32.const 1024)
