//! `keygate pairing mint` as an operator runs it.
