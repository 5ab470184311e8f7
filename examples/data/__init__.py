"""Sample runs shipped with LineGuard (``lineguard.samples``): five SKAB runs in skab/.

Data only, GPL-3.0: see skab/README.md and skab/LICENSE.
"""
