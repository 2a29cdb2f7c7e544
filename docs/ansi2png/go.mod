module github.com/redis-reservation/reservation/docs/ansi2png

go 1.24.0

require golang.org/x/image v0.30.0

require golang.org/x/text v0.28.0 // indirect
