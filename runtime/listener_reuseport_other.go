//go:build !unix

package runtime

import (
	"context"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// controlAdoptProcedure is the worker's Adopt (herd.v1.ControlService).
const controlAdoptProcedure = "/herd.v1.ControlService/Adopt"

// adopt takes nothing: there are no cluster listeners here.
func (s *Self) adopt(ctx context.Context, req *herdv1.AdoptRequest) (*herdv1.AdoptResponse, error) {
	closeFiles(FilesFromContext(ctx))
	return &herdv1.AdoptResponse{}, nil
}
