package store

import (
	"os"
	"testing"

	"github.com/csrd/csrd/fixture"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fixture.StopShared()
	os.Exit(code)
}
