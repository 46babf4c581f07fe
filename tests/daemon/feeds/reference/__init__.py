"""Earlier implementations kept as oracles for the ones that replaced them."""
