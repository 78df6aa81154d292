#!/bin/sh
# images.sh rebuilds the inputs of the golden tests from the .proto files of
# every case, so that the tests themselves need neither protoc nor buf:
#
#   - <case>/image.binpb: the case's files and their imports, with source
#     info, as a FileDescriptorSet (buf build --as-file-descriptor-set);
#   - <case>/gen/**/*.pb.go for the cases whose generated code is compiled
#     (those with a gen directory), written by protoc-gen-go.
#
# The .herd.go files are written by the golden test itself:
#
#   go test ./cmd/protoc-gen-go-herd/... -update
#
# Run from anywhere; buf and protoc-gen-go come from the module's tools.
set -eu
cd "$(dirname "$0")"
testdata=$(pwd)
root=$(cd ../../../.. && pwd)
module=github.com/herd-go/herd/cmd/protoc-gen-go-herd/internal/testdata
buf() { (cd "$root" && go tool -modfile=tools.mod buf "$@"); }

for dir in */; do
	c=${dir%/}
	buf build "$testdata/$c" --as-file-descriptor-set -o "$testdata/$c/image.binpb"
done

for dir in */gen/; do
	c=${dir%/gen/}
	find "$testdata/$c/gen" -name '*.pb.go' -delete
	buf generate "$testdata/$c" --template "{
		\"version\": \"v2\",
		\"plugins\": [{
			\"local\": [\"go\", \"tool\", \"protoc-gen-go\"],
			\"out\": \"$testdata/$c/gen\",
			\"opt\": \"module=$module/$c/gen\"
		}]
	}"
done
