module github.com/tinyclip-go/tinyclip

go 1.26.5

require (
	golang.org/x/image v0.48.0
	golang.org/x/sys v0.50.0
)
