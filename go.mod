module github.com/herd-go/herd

go 1.26.0

require (
	golang.org/x/sys v0.50.0
	google.golang.org/protobuf v1.36.12
)

tool (
	github.com/herd-go/herd/cmd/protoc-gen-go-herd
	google.golang.org/protobuf/cmd/protoc-gen-go
)
