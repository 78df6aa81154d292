//go:build !unix

package runtime

import (
	"context"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// adopt takes nothing: there are no cluster listeners here.
func (s *Self) adopt(ctx context.Context, req *herdv1.AdoptRequest) *Response[herdv1.AdoptResponse] {
	closeFiles(FilesFromContext(ctx))
	return NewResponse(&herdv1.AdoptResponse{})
}
