package config

import (
	"fmt"
	"os"
	"time"

	"github.com/csrd/csrd/policy"
)

// LoadPolicy reads and parses the policy file at path; an empty path is the
// built-in default policy. The read lives here, not in policy, so that
// policy stays free of I/O; csrd calls it at start-up and on SIGHUP,
// csrctl policy check on the file it is given.
func LoadPolicy(path string) (*policy.Engine, error) {
	if path == "" {
		return policy.Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: policy file: %w", err)
	}
	return policy.Parse(data, path, time.Now())
}

// LoadPolicy loads c.PolicyFile.
func (c *Config) LoadPolicy() (*policy.Engine, error) { return LoadPolicy(c.PolicyFile) }
