import pytest

from headstart.errors import HeadstartError
from headstart.registry import Registry


def test_registry_registers_in_order_and_refuses_duplicates():
    r: Registry = Registry("thing")

    @r.register()
    def alpha():
        return 1

    r.register("beta")(lambda: 2)
    assert r.names() == ["alpha", "beta"] and "alpha" in r and len(r) == 2
    assert r.get("beta")() == 2
    with pytest.raises(ValueError, match="already registered"):
        r.register("alpha")(lambda: 3)
    with pytest.raises(HeadstartError, match="choose one of: alpha, beta"):
        r.get("gamma")
