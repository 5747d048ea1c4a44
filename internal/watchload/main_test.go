package watchload

import (
	"os"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestMain removes the binaries the tests built once they have run.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
