//! PCI addresses and sysfs discovery.
