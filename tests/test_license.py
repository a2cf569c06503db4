"The LICENSE file is the licence settings.ini names (what the wheel's metadata and setup.py declare)."
import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# settings.ini's `license` key (nbdev's names) -> the SPDX id setup.py declares and the first lines of its text
LICENCES = {'apache2': ('Apache-2.0', ['Apache License', 'Version 2.0, January 2004', 'http://www.apache.org/licenses/'])}

def test_license_file_matches_settings():
    cfg = configparser.ConfigParser(); cfg.read(REPO/'settings.ini')
    key = cfg['DEFAULT']['license']
    assert key in LICENCES, f"settings.ini license = {key}: add its text to LICENSE and its id here"
    spdx, head = LICENCES[key]
    text = (REPO/'LICENSE').read_text()
    assert [l.strip() for l in text.strip().splitlines()[:3]] == head, text[:300]
    assert 'END OF TERMS AND CONDITIONS' in text and len(text.split()) > 1500    # the whole text, not a stub
    assert f"license='{spdx}'" in (REPO/'setup.py').read_text()
