package lifecycle

// SetAfterStep installs the test hook called after each Generate step.
func (s *Service) SetAfterStep(f func(step string)) { s.afterStep = f }
