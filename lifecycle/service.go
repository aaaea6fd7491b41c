package lifecycle

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/policy"
)

// Records is what lifecycle needs from the database (*store.Store): the
// union of what each use case declares where it is used — Generate
// (GenerateRecords), destroying key material (SealedSeeds), the pending
// list (PendingReads), key records and Recover (KeyReads), Delete
// (DeleteRecords), Import (MarriageRecords), Retire (RetireRecords),
// Reconcile (ReconcileRecords), admission (ProfileRecords) and background
// work's leases (WorkRecords). A use case sees only its own part.
type Records interface {
	GenerateRecords
	SealedSeeds
	PendingReads
	KeyReads
	DeleteRecords
	MarriageRecords
	RetireRecords
	ReconcileRecords
	ProfileRecords
	WorkRecords
}

// Decider is the policy that decides every request.
type Decider interface {
	Decide(req policy.Request) (*policy.Decision, error)
}

// Service runs the use cases.
type Service struct {
	tokens *TokenPool
	policy Decider
	leases Leases // nil: one csrd (see SetLeases)
	log    zerolog.Logger
	rand   io.Reader

	// What each use case reads and writes of the records: all one store
	// (Records), each seen through the interface its use case declares.
	gen       GenerateRecords
	seeds     SealedSeeds
	pending   PendingReads
	keys      KeyReads
	deletes   DeleteRecords
	marriages MarriageRecords
	retires   RetireRecords
	recon     ReconcileRecords
	profiles  ProfileRecords
	work      WorkRecords

	// cleanupTimeout bounds destroying a key and failing its record after
	// an error; it runs detached from the request so a client hanging up
	// cannot leave a half-made key behind.
	cleanupTimeout time.Duration
	// abandonRetryFor bounds the background retries of a clean-up that
	// failed (see abandon); abandonRetryDelay is the first pause between them.
	abandonRetryFor, abandonRetryDelay time.Duration
	// afterStep, when set (tests only), is called after each step of
	// Generate, Delete and Import; the crash tests use it to kill the
	// process in between.
	afterStep func(step string)
	// locks serialises Delete, Import and reconciliation per record: each
	// checks the token and then changes it.
	locks keyLocks
	// now is the clock certificates are checked against.
	now func() time.Time
}

// New returns a Service. log receives one line per failure with its cause.
// It keeps every key on token; NewPooled spreads them over several.
func New(token Token, records Records, pol Decider, log zerolog.Logger) *Service {
	pool, _ := NewTokenPool(log, token) // one token is always distinct
	return NewPooled(pool, records, pol, log)
}

// NewPooled returns a Service that keeps keys on the tokens of pool.
func NewPooled(pool *TokenPool, records Records, pol Decider, log zerolog.Logger) *Service {
	return &Service{
		tokens:            pool,
		gen:               records,
		seeds:             records,
		pending:           records,
		keys:              records,
		deletes:           records,
		marriages:         records,
		retires:           records,
		recon:             records,
		profiles:          records,
		work:              records,
		policy:            pol,
		log:               log,
		rand:              rand.Reader,
		cleanupTimeout:    30 * time.Second,
		abandonRetryFor:   15 * time.Minute,
		abandonRetryDelay: abandonRetryFirst,
		now:               time.Now,
	}
}
