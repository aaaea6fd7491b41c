package hsm

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// One module instance per process.
//
// Every pkcs11.New is a C_GetFunctionList of its own, and what that hands
// out depends on the module. Most return one static function list: every
// handle reaches the same instance, and a second C_Initialize answers
// CKR_CRYPTOKI_ALREADY_INITIALIZED. Others make a new instance per
// function list: p11-kit's client (remoting) opens a connection of its
// own for each, reaching a separate module instance in the server, with
// its own login and its own object handles, and its C_Initialize answers
// CKR_OK. A second handle is therefore never opened on a module in use:
// the raw handle is crypto11's own module context (moduleOf), and probe
// and closeLeakedSessions use it too while any Token holds the module.

// moduleOf returns the module context crypto11 opened for c. crypto11
// shares one per module path among its Contexts and offers no accessor,
// so it is read from the Context's unexported ctx field (a struct
// embedding *pkcs11.Ctx, in crypto11 v1.6.2). A crypto11 whose Context is
// shaped otherwise gives an error, and Open fails with it: csrd never
// guesses. TestModuleOf pins the shape.
func moduleOf(c *crypto11.Context) (*pkcs11.Ctx, error) {
	errShape := errors.New("crypto11.Context has no ctx field embedding *pkcs11.Ctx (crypto11 changed; see hsm/module.go)")
	if c == nil {
		return nil, errShape
	}
	v := reflect.ValueOf(c).Elem().FieldByName("ctx")
	if !v.IsValid() || v.Kind() != reflect.Struct || v.NumField() != 1 {
		return nil, errShape
	}
	f := v.Field(0)
	if f.Type() != reflect.TypeFor[*pkcs11.Ctx]() {
		return nil, errShape
	}
	p := *(**pkcs11.Ctx)(unsafe.Pointer(f.UnsafeAddr()))
	if p == nil {
		return nil, errShape
	}
	return p, nil
}

// modules is the module context of every module path a connected Token
// uses, with how many use it; guarded by moduleMu.
var modules = map[string]*moduleUse{}

type moduleUse struct {
	ctx   *pkcs11.Ctx
	users int
}

// holdModule records that a Token uses p for path; moduleMu is held.
func holdModule(path string, p *pkcs11.Ctx) {
	if m := modules[path]; m != nil {
		m.users++
		return
	}
	modules[path] = &moduleUse{ctx: p, users: 1}
}

// releaseModule undoes holdModule; moduleMu is held.
func releaseModule(path string) {
	if m := modules[path]; m != nil {
		if m.users--; m.users == 0 {
			delete(modules, path)
		}
	}
}

// heldModule returns the module context Tokens use for path, nil when
// none does; moduleMu is held.
func heldModule(path string) *pkcs11.Ctx {
	if m := modules[path]; m != nil {
		return m.ctx
	}
	return nil
}
