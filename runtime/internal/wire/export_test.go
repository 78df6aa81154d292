package wire

// SetAliasMin lowers the size from which Unmarshal aliases bytes fields,
// so that tests and the fuzzer reach that path with small inputs. It
// returns a function that restores the default.
func SetAliasMin(n int) (restore func()) {
	aliasMin = n
	return func() { aliasMin = AliasMinSize }
}
