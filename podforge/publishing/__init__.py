"""Publishing to podcast apps: ID3 tags and chapters in the MP3, and the show's RSS feed."""
