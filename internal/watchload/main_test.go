package watchload

import (
	"os"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestMain removes the binaries the tests built once they have run.
// As the attacker process (attackEnv set), it runs the attack instead.
func TestMain(m *testing.M) {
	if spec := os.Getenv(attackEnv); spec != "" {
		os.Exit(attack(spec))
	}
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
