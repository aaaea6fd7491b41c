package hsm

import (
	"sync"

	"github.com/miekg/pkcs11"
)

// idleSessions keeps the raw handle's sessions open between operations.
// Opening and closing one per operation is not free on every module: on
// SoftHSM 2.6.1, C_CloseSession walks every object handle the process holds
// (HandleManager::sessionClosed) under the lock every other call takes, so
// per-operation sessions got slower with each key made. At most
// cap(rawSem)+cap(workSem) sessions exist, as before; an operation that
// fails closes its session instead of returning it (it may be mid-operation
// or be what broke), and disconnect closes the idle ones.
type idleSessions struct {
	mu sync.Mutex
	hs []pkcs11.SessionHandle
}

func (s *idleSessions) take() (pkcs11.SessionHandle, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hs) == 0 {
		return 0, false
	}
	sh := s.hs[len(s.hs)-1]
	s.hs = s.hs[:len(s.hs)-1]
	return sh, true
}

func (s *idleSessions) put(sh pkcs11.SessionHandle) {
	s.mu.Lock()
	s.hs = append(s.hs, sh)
	s.mu.Unlock()
}

// closeAll closes the idle sessions; callers guarantee none is in use.
func (s *idleSessions) closeAll(p *pkcs11.Ctx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.hs {
		_ = p.CloseSession(sh)
	}
	s.hs = nil
}
