"""The account itself: log out (revoke the token), export everything (GDPR Art. 20), delete everything."""
