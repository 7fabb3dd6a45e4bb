package app

import "github.com/enrollgate/enrollgate/internal/httpapi"

var _ httpapi.ReadModel = projectorReads{}
