import { MemoryStore } from './memory-store.js';
import { storeContract } from './store-contract.js';

// reopen is a second store over the same state (another connection to the same "database").
storeContract('memory', async () => {
  const store = new MemoryStore();
  return {
    store,
    reopen: () => new MemoryStore(store.state),
    openBackup: (file) => MemoryStore.fromBackup(file),
    cleanup: () => {},
  };
});
