"""Process checks shared by the tests that kill controllers (test_orphan.py, test_parent_death.py)."""


def alive(pid: int) -> bool:
    """Running and not a zombie (a reparented orphan may wait unreaped under a container's init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
