"""trio-kad: a Kademlia distributed hash table on Trio."""
