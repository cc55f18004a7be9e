import pytest

from esign.pki import LocalPki

PASSPHRASE = b"test passphrase for the PKI"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return LocalPki.open(tmp_path_factory.mktemp("data"), PASSPHRASE, "Test Mediation Org")
